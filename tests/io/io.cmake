# io_test reads the reference models under ../shared; absent, those tests skip, or fail when CI=true
# (test_inputs.hpp).
target_compile_definitions(io_test PRIVATE HP_SHARED_DIR="${HP_SHARED}")
# Box files and sharded checkpoint directories, a second source of io_test.
target_sources(io_test PRIVATE ${CMAKE_CURRENT_LIST_DIR}/box_file_tests.cpp)
