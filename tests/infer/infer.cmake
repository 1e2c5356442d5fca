# Second sources of infer_test: sharded inference (tp, kv heads fewer than tp) on threads meshes,
# and the KV offload tests; they read the reference models under ../shared (absent: those tests
# skip, or fail when CI=true, test_inputs.hpp).
target_sources(infer_test PRIVATE ${CMAKE_CURRENT_LIST_DIR}/infer_shard_tests.cpp
                                  ${CMAKE_CURRENT_LIST_DIR}/kv_offload_tests.cpp)
target_compile_definitions(infer_test PRIVATE HP_SHARED_DIR="${HP_SHARED}")
