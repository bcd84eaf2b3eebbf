# Imported targets for the Debian libraries that have no pkg-config file:
# wslay (libwslay-dev, WebSocket framing) and http-parser
# (libhttp-parser-dev, HTTP/1.1 heads for the upgrade and JSON-RPC POST).
function(myc_find_lib target lib header)
  find_library(${target}_LIB ${lib})
  find_path(${target}_INC ${header})
  if(NOT ${target}_LIB OR NOT ${target}_INC)
    message(FATAL_ERROR "lib${lib} not found (${header}): run scripts/deps.sh")
  endif()
  add_library(myc::${target} UNKNOWN IMPORTED)
  set_target_properties(myc::${target} PROPERTIES
    IMPORTED_LOCATION ${${target}_LIB}
    INTERFACE_INCLUDE_DIRECTORIES ${${target}_INC})
endfunction()

myc_find_lib(wslay wslay wslay/wslay.h)
myc_find_lib(http_parser http_parser http_parser.h)
