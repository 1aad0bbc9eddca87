# kvt_add_test(NAME SOURCES... LIBS libs...)
# One Criterion executable per behaviour, registered with CTest.
function(kvt_add_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CRITERION)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  add_test(NAME ${name} COMMAND ${name} --jobs 1)
  set_tests_properties(${name} PROPERTIES TIMEOUT 600
    ENVIRONMENT "KVT_TEST_TMP=${CMAKE_BINARY_DIR}/test-tmp")
endfunction()
