# Byte-level BPE tokenizers, a second source of data_test.
target_sources(data_test PRIVATE ${CMAKE_CURRENT_LIST_DIR}/bpe_tests.cpp)
# The pre-tokenizer against GPT-2's regex run by Python's `regex` module (python3-regex).
add_executable(pretokenize_tool ${CMAKE_CURRENT_LIST_DIR}/pretokenize_main.cpp)
target_link_libraries(pretokenize_tool PRIVATE hp_data)
add_test(NAME data_pretokenize_vs_regex
         COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/pretokenize_vs_regex.py
                 $<TARGET_FILE:pretokenize_tool>)
set_tests_properties(data_pretokenize_vs_regex PROPERTIES LABELS unit)
# The synthetic image + caption set of the vision-language model, a third source of data_test.
target_sources(data_test PRIVATE ${CMAKE_CURRENT_LIST_DIR}/image_caption_tests.cpp)
