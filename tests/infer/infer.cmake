# The KV offload tests, a second source of infer_test; they read the reference models under
# ../shared (absent: those skip, or fail when CI=true, test_inputs.hpp).
target_sources(infer_test PRIVATE ${CMAKE_CURRENT_LIST_DIR}/kv_offload_tests.cpp)
target_compile_definitions(infer_test PRIVATE HP_SHARED_DIR="${HP_SHARED}")
