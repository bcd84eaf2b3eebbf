# The libFuzzer targets of fuzz/ (docs/TESTING.md): built by clang as a
# project of their own (the engine again, with coverage and ASan+UBSan),
# and each run by ctest for a bounded number of inputs (label fuzz) over
# its seed corpus fuzz/corpus/<target>.  Without clang they are skipped.
option(MYC_FUZZ "Build the libFuzzer targets of fuzz/ (needs clang)" ON)
find_program(MYC_CLANG NAMES clang clang-14)
if(NOT MYC_FUZZ OR NOT MYC_CLANG)
  message(STATUS "fuzz targets: off (clang not found, or MYC_FUZZ=OFF)")
  return()
endif()

# The engine's sources and definitions, as the main build compiles them,
# for fuzz/CMakeLists.txt to compile again.
get_target_property(MYC_ENGINE_DEFS libmycelium COMPILE_DEFINITIONS)
# Under the sanitizers the default hook stays on malloc, which they watch.
list(REMOVE_ITEM MYC_ENGINE_DEFS MYC_MIMALLOC)
file(WRITE ${CMAKE_BINARY_DIR}/fuzz-engine.cmake
  "set(MYC_ENGINE_SOURCES [==[${MYC_SOURCES}]==])\n"
  "set(MYC_ENGINE_DEFS [==[${MYC_ENGINE_DEFS}]==])\n")

include(ExternalProject)
ExternalProject_Add(myc_fuzz
  SOURCE_DIR ${CMAKE_SOURCE_DIR}/fuzz
  BINARY_DIR ${CMAKE_BINARY_DIR}/fuzz
  CMAKE_ARGS -DCMAKE_C_COMPILER=${MYC_CLANG} -DCMAKE_BUILD_TYPE=RelWithDebInfo
             -DMYC_ENGINE=${CMAKE_BINARY_DIR}/fuzz-engine.cmake
  INSTALL_COMMAND ""
  BUILD_ALWAYS ON) # it does not see the engine's sources change otherwise

# Inputs per target in `make test`: a few seconds each on one core.
set(MYC_FUZZ_RUNS contract:5000 http_response:100000 ws:50000 url:100000
    msgpack:50000 control:50000 jsonrpc:10000 wire:200000 handshake:200000)
foreach(pair ${MYC_FUZZ_RUNS})
  string(REPLACE ":" ";" pair ${pair})
  list(GET pair 0 target)
  list(GET pair 1 runs)
  add_test(NAME fuzz/${target}
    COMMAND ${CMAKE_SOURCE_DIR}/fuzz/run.sh ${CMAKE_BINARY_DIR} ${target}
            -runs=${runs} -max_total_time=60)
  set_tests_properties(fuzz/${target} PROPERTIES LABELS "fuzz" TIMEOUT 120)
endforeach()
