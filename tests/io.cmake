# io_test reads the reference models under ../shared; absent, those tests skip.
target_compile_definitions(io_test PRIVATE HP_SHARED_DIR="${PROJECT_SOURCE_DIR}/../shared")
