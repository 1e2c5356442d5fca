# memory_test runs train::Trainer with and without offload (bitwise the same), so it also links
# hp_train.
# The offload benchmark is `hp bench offload` (src/cli/bench_offload.cpp); e2e/offload.sh drives
# offload through hp check, hp train and hp plan.
target_link_libraries(memory_test PRIVATE hp_train)
add_test(NAME e2e_offload COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/offload.sh
                                  $<TARGET_FILE:hp> ${PROJECT_SOURCE_DIR})
set_tests_properties(e2e_offload PROPERTIES LABELS e2e SKIP_RETURN_CODE 77
                                             ENVIRONMENT HP_SHARED=${HP_SHARED})
