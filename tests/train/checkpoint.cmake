# Trainer pieces through sharded checkpoint files across strategies (label unit); links train,
# comm and shard, so not named *_test.cpp.
add_executable(ckpt_units_test ${CMAKE_CURRENT_LIST_DIR}/checkpoint_tests.cpp)
target_link_libraries(ckpt_units_test PRIVATE hp_train hp_comm hp_shard hp_backend_cpu
                                              GTest::gtest GTest::gtest_main)
gtest_discover_tests(ckpt_units_test PROPERTIES LABELS unit DISCOVERY_TIMEOUT 60)
