# The IR's own checks (inference errors, verify/str, liveness, the executor's kernels from a
# backend); a binary of its own because it needs the runtime and the CPU backend besides hp_ir.
add_executable(ir_graph_test ${CMAKE_CURRENT_LIST_DIR}/ir_graph_tests.cpp)
target_link_libraries(ir_graph_test PRIVATE hp_autodiff hp_runtime hp_backend_cpu GTest::gtest
                                            GTest::gtest_main)
gtest_discover_tests(ir_graph_test PROPERTIES LABELS unit DISCOVERY_TIMEOUT 60)
