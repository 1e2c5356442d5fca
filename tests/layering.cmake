# The include-layering check (scripts/check_layering.sh): no module includes a header of a module
# it may not depend on; also shown to catch a violation (label unit).
add_test(NAME layering COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/layering.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(layering PROPERTIES LABELS unit TIMEOUT 300)
