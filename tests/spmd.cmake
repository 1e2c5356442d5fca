# SPMD end-to-end tests (label e2e): every preset and uneven meshes on both reference cases
# against the single-device run, fsdp memory, hp plan and strict mode (tests/e2e/spmd.sh).
set(HP_SHARED_SPMD ${PROJECT_SOURCE_DIR}/../shared)
foreach(case gpt2-tiny llama-tiny)
  if(EXISTS ${HP_SHARED_SPMD}/reference/${case}/case.json)
    add_test(NAME e2e_spmd_${case}
             COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/spmd.sh $<TARGET_FILE:hp>
                     ${HP_SHARED_SPMD}/reference/${case})
    set_tests_properties(e2e_spmd_${case} PROPERTIES LABELS e2e TIMEOUT 120)
  endif()
endforeach()
