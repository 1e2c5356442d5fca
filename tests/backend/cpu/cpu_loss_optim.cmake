# Second file of the CPU kernel tests (losses, embeddings, rope, AdamW).
add_executable(cpu_loss_optim_test ${CMAKE_CURRENT_LIST_DIR}/cpu_loss_optim_tests.cpp)
target_link_libraries(cpu_loss_optim_test PRIVATE hp_backend_cpu GTest::gtest GTest::gtest_main)
gtest_discover_tests(cpu_loss_optim_test PROPERTIES LABELS unit DISCOVERY_TIMEOUT 60)
