# The README's first command in a new Debian 12 root (label slow; scripts/test.sh --all runs it):
# setup.sh must install every package the build needs, and hp train must reach its sample.
# Needs root and network access; its own time limit (40 min) ends before ctest's.
add_test(NAME fresh_root COMMAND bash ${PROJECT_SOURCE_DIR}/scripts/fresh_root.sh)
set_tests_properties(fresh_root PROPERTIES LABELS slow TIMEOUT 3600 RUN_SERIAL TRUE)
