# Target helpers in the shape of abseil's AbseilHelpers.cmake: every library, test and binary is
# declared with its sources and dependencies in one call, and gets the project's warnings.

set(NAIAD_WARNINGS -Wall -Wextra -Werror -Werror=unused-result -Wno-unused-parameter
                   -Wno-missing-field-initializers)

# naiad_cc_library(NAME name SRCS ... HDRS ... DEPS ... [TESTONLY] [COMMAND])
# Declares naiad_<name> with the alias naiad::<name>. A library without sources is an INTERFACE
# library. COMMAND marks a library that registers `naiad` subcommands: the `naiad` binary links
# every such library whole, so a component adds a subcommand without touching apps/naiad.
function(naiad_cc_library)
  cmake_parse_arguments(ARG "TESTONLY;COMMAND" "NAME" "SRCS;HDRS;DEPS" ${ARGN})
  set(target naiad_${ARG_NAME})
  if(ARG_SRCS)
    add_library(${target} STATIC ${ARG_SRCS} ${ARG_HDRS})
    target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR})
    target_link_libraries(${target} PUBLIC ${ARG_DEPS})
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${NAIAD_WARNINGS}>)
  else()
    add_library(${target} INTERFACE ${ARG_HDRS})
    target_include_directories(${target} INTERFACE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR})
    target_link_libraries(${target} INTERFACE ${ARG_DEPS})
  endif()
  add_library(naiad::${ARG_NAME} ALIAS ${target})
  if(ARG_COMMAND)
    set_property(GLOBAL APPEND PROPERTY NAIAD_COMMAND_LIBS ${target})
  endif()
endfunction()

# naiad_cc_test(NAME name SRCS ... DEPS ... LABEL unit|integration|e2e [TIMEOUT seconds])
# One gtest binary; each TEST in it becomes a ctest test carrying LABEL.
function(naiad_cc_test)
  cmake_parse_arguments(ARG "" "NAME;LABEL;TIMEOUT" "SRCS;DEPS" ${ARGN})
  if(NOT NAIAD_BUILD_TESTS)
    return()
  endif()
  if(NOT ARG_LABEL)
    set(ARG_LABEL unit)
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} GTest::gmock GTest::gtest_main)
  target_compile_options(${ARG_NAME} PRIVATE ${NAIAD_WARNINGS})
  # Tests that start real servers time real transfers: they run alone (RUN_SERIAL), never beside
  # another test on the two cores.
  set(serial FALSE)
  if(NOT ARG_LABEL STREQUAL "unit")
    set(serial TRUE)
  endif()
  gtest_discover_tests(${ARG_NAME}
    DISCOVERY_MODE PRE_TEST
    PROPERTIES LABELS ${ARG_LABEL} TIMEOUT ${ARG_TIMEOUT} RUN_SERIAL ${serial}
               SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]"
               ENVIRONMENT "NAIAD_SOURCE_DIR=${PROJECT_SOURCE_DIR};NAIAD_BINARY_DIR=${PROJECT_BINARY_DIR}")
endfunction()

# naiad_cc_binary(NAME name SRCS ... DEPS ...)
function(naiad_cc_binary)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS})
  target_compile_options(${ARG_NAME} PRIVATE ${NAIAD_WARNINGS})
endfunction()
