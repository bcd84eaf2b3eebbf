# Registers every C test (engine/tests/*_test.c) and busted spec
# (spec/**/*_spec.lua) with ctest.  Each C test also runs against an
# ASan+UBSan build of the engine under the label "asan".

# Tests link the engine's objects directly (they use internal functions),
# and export its public symbols so that Lua services find them via ffi.C.
myc_engine_target(myc_engine_objs OBJECT)
if(MYC_SANITIZERS)
  set(MYC_SAN_FLAGS -fsanitize=address,undefined -fno-omit-frame-pointer
      -fno-sanitize-recover=undefined)
  # A double out of an integer's range converted to it (a timer of
  # math.huge ms, a memory limit of 1e300 MB) is undefined and not part of
  # -fsanitize=undefined.  clang and gcc >= 5 have the check; a compiler
  # without it builds the tests without it.
  include(CheckCCompilerFlag)
  set(CMAKE_REQUIRED_LINK_OPTIONS -fsanitize=float-cast-overflow)
  check_c_compiler_flag(-fsanitize=float-cast-overflow MYC_HAS_FLOAT_CAST_CHECK)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
  if(MYC_HAS_FLOAT_CAST_CHECK)
    list(APPEND MYC_SAN_FLAGS -fsanitize=float-cast-overflow
         -fno-sanitize-recover=float-cast-overflow)
  endif()
  myc_engine_target(myc_engine_asan OBJECT)
  target_compile_options(myc_engine_asan PRIVATE ${MYC_SAN_FLAGS})
  # Debug assertions (base/check.h), including which thread runs what.
  target_compile_definitions(myc_engine_asan PUBLIC MYC_DEBUG)
  target_link_options(myc_engine_asan PUBLIC ${MYC_SAN_FLAGS})
endif()

# The tests with several threads also run against a ThreadSanitizer build
# (label tsan).
set(MYC_TSAN_TESTS engine_test stress_test supervisor_test budget_test spawn_test
    hostloop_test link_test metrics_test nats_test)
myc_engine_target(myc_engine_tsan OBJECT)
set(MYC_TSAN_FLAGS -fsanitize=thread -fno-omit-frame-pointer)
target_compile_options(myc_engine_tsan PRIVATE ${MYC_TSAN_FLAGS})
target_compile_definitions(myc_engine_tsan PUBLIC MYC_DEBUG)
target_link_options(myc_engine_tsan PUBLIC ${MYC_TSAN_FLAGS})

# BUILD: the examples' launchers (examples/*/run) find myc-replay and the
# binary in the build tree under test, not in <source>/build, which a
# build directory elsewhere (cmake -B /tmp/...) leaves absent or stale.
set(MYC_TEST_ENV
  "BUILD=${CMAKE_BINARY_DIR}"
  "MYCELIUM_PATH=${MYC_LUA_DIR}"
  "MYCELIUM_LIB=${CMAKE_BINARY_DIR}/libmycelium.so"
  "MYCELIUM_BIN=${CMAKE_BINARY_DIR}/mycelium"
  "MYCELIUM_SOURCE_DIR=${CMAKE_SOURCE_DIR}")

file(GLOB MYC_C_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/engine/tests/*_test.c)
foreach(src ${MYC_C_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_compile_options(${name} PRIVATE ${MYC_WARNINGS})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/engine/src
                             ${CMAKE_SOURCE_DIR}/engine/tests)
  target_link_libraries(${name} PRIVATE myc_engine_objs)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests
                        ENABLE_EXPORTS ON)
  add_test(NAME c/${name} COMMAND ${name})
  set_tests_properties(c/${name} PROPERTIES LABELS "c" TIMEOUT 120
                       ENVIRONMENT "${MYC_TEST_ENV}")
  if(MYC_SANITIZERS)
    add_executable(${name}_asan ${src})
    target_compile_options(${name}_asan PRIVATE ${MYC_WARNINGS} ${MYC_SAN_FLAGS})
    target_compile_definitions(${name}_asan PRIVATE MYC_TEST_ASAN=1)
    target_include_directories(${name}_asan PRIVATE ${CMAKE_SOURCE_DIR}/engine/src
                               ${CMAKE_SOURCE_DIR}/engine/tests)
    target_link_libraries(${name}_asan PRIVATE myc_engine_asan)
    set_target_properties(${name}_asan PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests
                          ENABLE_EXPORTS ON)
    add_test(NAME asan/${name} COMMAND ${name}_asan)
    set_tests_properties(asan/${name} PROPERTIES LABELS "asan" TIMEOUT 300
      ENVIRONMENT "${MYC_TEST_ENV};ASAN_OPTIONS=detect_leaks=1:abort_on_error=1;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
  endif()
  if(name IN_LIST MYC_TSAN_TESTS)
    add_executable(${name}_tsan ${src})
    target_compile_options(${name}_tsan PRIVATE ${MYC_WARNINGS} ${MYC_TSAN_FLAGS})
    target_include_directories(${name}_tsan PRIVATE ${CMAKE_SOURCE_DIR}/engine/src
                               ${CMAKE_SOURCE_DIR}/engine/tests)
    target_link_libraries(${name}_tsan PRIVATE myc_engine_tsan)
    set_target_properties(${name}_tsan PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests
                          ENABLE_EXPORTS ON)
    add_test(NAME tsan/${name} COMMAND ${name}_tsan)
    set_tests_properties(tsan/${name} PROPERTIES LABELS "tsan" TIMEOUT 300
      ENVIRONMENT "${MYC_TEST_ENV};TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1")
  endif()
endforeach()

find_program(BUSTED busted)
find_program(LUAJIT_BIN luajit)
if(NOT BUSTED OR NOT LUAJIT_BIN)
  message(FATAL_ERROR "busted and luajit are needed for the specs: run scripts/deps.sh")
endif()
file(GLOB_RECURSE MYC_SPECS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/spec/*_spec.lua)
foreach(spec ${MYC_SPECS})
  file(RELATIVE_PATH rel ${CMAKE_SOURCE_DIR}/spec ${spec})
  string(REGEX REPLACE "_spec\\.lua$" "" name ${rel})
  add_test(NAME spec/${name}
    COMMAND ${BUSTED} --lua=${LUAJIT_BIN} --helper=${CMAKE_SOURCE_DIR}/spec/helper.lua
            -o utfTerminal ${spec}
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(spec/${name} PROPERTIES LABELS "spec" TIMEOUT 300
                       DEPENDS "" ENVIRONMENT "${MYC_TEST_ENV}")
endforeach()

# The layering and the C<->Lua boundary (docs/ARCHITECTURE.md): each check
# also proves on built-in cases that it can fail.
foreach(check layers ffi symbols)
  add_test(NAME lint/${check}-selftest
    COMMAND ${LUAJIT_BIN} ${CMAKE_SOURCE_DIR}/scripts/check-${check}.lua --self-test)
  set_tests_properties(lint/${check}-selftest PROPERTIES LABELS "lint" TIMEOUT 60)
endforeach()
add_test(NAME lint/layers
  COMMAND ${LUAJIT_BIN} ${CMAKE_SOURCE_DIR}/scripts/check-layers.lua
          ${CMAKE_SOURCE_DIR}/engine/src)
add_test(NAME lint/ffi
  COMMAND ${LUAJIT_BIN} ${CMAKE_SOURCE_DIR}/scripts/check-ffi.lua ${CMAKE_SOURCE_DIR})
add_test(NAME lint/symbols
  COMMAND ${LUAJIT_BIN} ${CMAKE_SOURCE_DIR}/scripts/check-symbols.lua
          $<TARGET_FILE:libmycelium> ${CMAKE_SOURCE_DIR})
set_tests_properties(lint/layers lint/ffi lint/symbols PROPERTIES LABELS "lint"
                     TIMEOUT 60)

# Installed under a prefix, moved, and used by hosts (pkg-config, CMake).
add_test(NAME install/prefix COMMAND ${CMAKE_SOURCE_DIR}/scripts/test-install.sh)
set_tests_properties(install/prefix PROPERTIES LABELS "install" TIMEOUT 900)

# The engine builds and runs without the network clients.
add_test(NAME install/no-net COMMAND ${CMAKE_SOURCE_DIR}/scripts/test-no-net.sh)
set_tests_properties(install/no-net PROPERTIES LABELS "install" TIMEOUT 600)

# The rock (rockspec/) builds, installs and works outside the source tree.
# Always registered: without luarocks the script reports the test skipped
# (exit 77), or failed when CI is set, where scripts/deps.sh installed it.
add_test(NAME install/rockspec COMMAND ${CMAKE_SOURCE_DIR}/scripts/test-rockspec.sh)
set_tests_properties(install/rockspec PROPERTIES LABELS "install" TIMEOUT 900
                     SKIP_RETURN_CODE 77)
