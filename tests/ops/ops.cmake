# ops_test differentiates traced graphs and runs them through the runtime executor, so it links
# hp_autodiff and hp_runtime too.
target_link_libraries(ops_test PRIVATE hp_autodiff hp_runtime)
