# SPMD steps vs one device on ignored targets, vocabulary-parallel and kv-replicated cases (label
# unit); not named *_test.cpp because it links several modules (train, comm, shard).
add_executable(spmd_units_test ${CMAKE_CURRENT_LIST_DIR}/spmd_tests.cpp)
target_link_libraries(spmd_units_test PRIVATE hp_train hp_comm hp_shard hp_mpmd hp_backend_cpu GTest::gtest
                                              GTest::gtest_main)
gtest_discover_tests(spmd_units_test PROPERTIES LABELS unit DISCOVERY_TIMEOUT 60)
