# The parser fuzz targets (label slow; tests/fuzz, scripts/fuzz.sh): built with clang, libFuzzer,
# ASan and UBSan into build/fuzz (a configuration of its own, -DHP_FUZZ=ON) and each run for 20 s
# over its corpus. Fails on a crash, a sanitizer report, a leak, a hang, an exception other than
# hp::Error or an allocation beyond the limit, naming the target and the saved input.
add_test(NAME fuzz_parsers COMMAND bash ${PROJECT_SOURCE_DIR}/scripts/fuzz.sh --seconds 20
                                   --build-dir ${CMAKE_BINARY_DIR}/fuzz)
set_tests_properties(fuzz_parsers PROPERTIES LABELS slow TIMEOUT 1800 RUN_SERIAL TRUE)
