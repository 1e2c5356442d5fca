# End-to-end tests of the hp tool (label e2e): reference cases, training, resume, errors.
foreach(case gpt2-tiny llama-tiny)
  if(EXISTS ${HP_SHARED}/reference/${case}/case.json)
    add_test(NAME e2e_check_${case} COMMAND $<TARGET_FILE:hp> check ${HP_SHARED}/reference/${case})
    add_test(NAME e2e_check_${case}_2threads
             COMMAND $<TARGET_FILE:hp> check ${HP_SHARED}/reference/${case} --threads 2)
    set_tests_properties(e2e_check_${case} e2e_check_${case}_2threads PROPERTIES LABELS e2e)
  else()
    hp_missing_input(e2e_check_${case} e2e ${HP_SHARED}/reference/${case})
  endif()
endforeach()
foreach(t train_resume train_cli generate generate_kv bad_input options signals planner serve
          calibrate serve_node)
  add_test(NAME e2e_${t} COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/${t}.sh $<TARGET_FILE:hp>
                                 ${PROJECT_SOURCE_DIR})
  set_tests_properties(e2e_${t} PROPERTIES LABELS e2e)
endforeach()

# The planner's predictions of published runs, their layouts fixed, within tolerance.
add_test(NAME e2e_published_runs COMMAND bash ${PROJECT_SOURCE_DIR}/bench/published_runs.sh
                                         $<TARGET_FILE:hp>)
set_tests_properties(e2e_published_runs PROPERTIES LABELS e2e)

# hp generate under tp2, dp2 and dp2xtp2 on threads and tp2 under mpirun -np 2 (when MPI is
# built) against one device.
set(hp_mpiexec "")
if(MPI_FOUND AND MPIEXEC_EXECUTABLE)
  set(hp_mpiexec ${MPIEXEC_EXECUTABLE})
endif()
add_test(NAME e2e_generate_sharded COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/generate_sharded.sh
                                           $<TARGET_FILE:hp> ${PROJECT_SOURCE_DIR} "${hp_mpiexec}")
set_tests_properties(e2e_generate_sharded PROPERTIES LABELS e2e)

# hp check must fail on damaged expected results (a copy of gpt2-tiny edited one way at a time).
add_executable(check_cases ${CMAKE_CURRENT_LIST_DIR}/check_cases.cpp)
target_link_libraries(check_cases PRIVATE hp_io GTest::gtest GTest::gtest_main)
target_compile_definitions(check_cases PRIVATE HP_BIN="$<TARGET_FILE:hp>"
                                               HP_SHARED_DIR="${HP_SHARED}")
add_dependencies(check_cases hp)
gtest_discover_tests(check_cases PROPERTIES LABELS e2e DISCOVERY_TIMEOUT 60)

# Crash injection: 50 runs killed with SIGKILL at random moments while saving, each resumed to
# a bitwise-equal end (label slow: several minutes).
add_test(NAME e2e_crash_save COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/crash_save.sh
                                     $<TARGET_FILE:hp> ${PROJECT_SOURCE_DIR})
set_tests_properties(e2e_crash_save PROPERTIES LABELS slow TIMEOUT 1800 RUN_SERIAL TRUE)

# The vision-language model: its reference case in the repository, one device and 1 + 2 stages.
add_test(NAME e2e_check_vlm-tiny COMMAND $<TARGET_FILE:hp> check
                                         ${PROJECT_SOURCE_DIR}/tests/reference/vlm-tiny)
set(vlm_mpi "")
set(vlm_labels e2e)
if(MPI_FOUND AND MPIEXEC_EXECUTABLE)  # the 1 + 2 layout also under mpirun -np 3
  set(vlm_mpi ${MPIEXEC_EXECUTABLE})
  set(vlm_labels "e2e;mpi")
endif()
add_test(NAME e2e_vlm COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/vlm.sh $<TARGET_FILE:hp>
                              ${PROJECT_SOURCE_DIR} ${vlm_mpi})
set_tests_properties(e2e_check_vlm-tiny PROPERTIES LABELS e2e)
set_tests_properties(e2e_vlm PROPERTIES LABELS "${vlm_labels}")
# KV offload under --device-memory and hp bench context on a small Llama (a few seconds).
add_test(NAME e2e_kv_offload COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/kv_offload.sh
                                     $<TARGET_FILE:hp> ${PROJECT_SOURCE_DIR})
set_tests_properties(e2e_kv_offload PROPERTIES LABELS e2e)
