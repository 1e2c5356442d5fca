# The CPU GEMM and fused attention tests, a second test binary for hp_backend_cpu.
add_executable(cpu_attention_test ${CMAKE_CURRENT_LIST_DIR}/cpu_attention_tests.cpp)
target_link_libraries(cpu_attention_test PRIVATE hp_backend_cpu GTest::gtest GTest::gtest_main)
gtest_discover_tests(cpu_attention_test PROPERTIES LABELS unit DISCOVERY_TIMEOUT 60)
