# memory_test compares offloaded training with train::Trainer, so it also links hp_train.
target_link_libraries(memory_test PRIVATE hp_train)
# `memory_bench [options]`: the offload benchmark (hp::memory::bench_main) without the CLI.
add_executable(memory_bench ${CMAKE_CURRENT_SOURCE_DIR}/memory_bench.cpp)
target_link_libraries(memory_bench PRIVATE hp_memory)
