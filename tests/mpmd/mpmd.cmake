# HyperMPMD: pipeline specs, block balancing, schedules, the verifier, the simulator and the
# synthesiser, one test binary over tests/mpmd/*.cpp (label unit). mpmd_tables prints the bubble
# table of docs/mpmd.md and writes its timeline SVG: mpmd_tables [DIR].
file(GLOB mpmd_test_srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*_test.cpp)
add_executable(mpmd_test ${mpmd_test_srcs})
target_link_libraries(mpmd_test PRIVATE hp_mpmd GTest::gtest GTest::gtest_main)
target_include_directories(mpmd_test PRIVATE ${PROJECT_SOURCE_DIR}/src)
gtest_discover_tests(mpmd_test PROPERTIES LABELS unit DISCOVERY_TIMEOUT 60)
add_executable(mpmd_tables ${CMAKE_CURRENT_LIST_DIR}/tables.cpp)
target_link_libraries(mpmd_tables PRIVATE hp_mpmd)
