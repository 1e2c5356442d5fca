# ops_test runs traced graphs through the runtime executor, so it links hp_runtime too.
target_link_libraries(ops_test PRIVATE hp_runtime)
