# ops_test runs traced graphs through the runtime executor, so it links hp_runtime too.
target_link_libraries(ops_test PRIVATE hp_autodiff hp_runtime)

# The IR's own checks (inference errors, verify/str, liveness); not named *_test.cpp because it
# needs the runtime besides hp_ir.
add_executable(ir_graph_test ${CMAKE_CURRENT_SOURCE_DIR}/ir_graph_tests.cpp)
target_link_libraries(ir_graph_test PRIVATE hp_autodiff hp_runtime hp_backend_cpu GTest::gtest
                                            GTest::gtest_main)
gtest_discover_tests(ir_graph_test PROPERTIES LABELS unit DISCOVERY_TIMEOUT 60)
