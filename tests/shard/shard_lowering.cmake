# The sharding table (every op lowered per its rule on threads meshes against one device), the
# lowered graph's plan table and strict validation (label unit); not named *_test.cpp because it
# links several modules (runtime, comm, shard, train).
add_executable(shard_lowering_test ${CMAKE_CURRENT_LIST_DIR}/shard_lowering_tests.cpp)
target_link_libraries(shard_lowering_test PRIVATE hp_train hp_runtime hp_comm hp_shard hp_backend_cpu
                                                  GTest::gtest GTest::gtest_main)
gtest_discover_tests(shard_lowering_test PROPERTIES LABELS unit DISCOVERY_TIMEOUT 60)
