# Sharded inference (tp, kv heads fewer than tp) on threads meshes, a second source of infer_test;
# it reads the reference models under ../shared (absent: those tests skip, or fail when CI=true).
target_sources(infer_test PRIVATE ${CMAKE_CURRENT_LIST_DIR}/infer_shard_tests.cpp)
target_compile_definitions(infer_test PRIVATE HP_SHARED_DIR="${HP_SHARED}")
