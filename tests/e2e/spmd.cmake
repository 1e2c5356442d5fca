# SPMD end-to-end tests (labels e2e, mpi): every preset and uneven meshes on both reference cases
# against the single-device run, fsdp memory, hp plan and strict mode (tests/e2e/spmd.sh).
foreach(case gpt2-tiny llama-tiny)
  if(EXISTS ${HP_SHARED}/reference/${case}/case.json)
    add_test(NAME e2e_spmd_${case}
             COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/spmd.sh $<TARGET_FILE:hp>
                     ${HP_SHARED}/reference/${case})
    set_tests_properties(e2e_spmd_${case} PROPERTIES LABELS e2e TIMEOUT 120)
  else()
    hp_missing_input(e2e_spmd_${case} e2e ${HP_SHARED}/reference/${case})
  endif()
endforeach()

# The deep cases have a batch of 4, which splits over 4 ranks: fsdp4 reduce-scatters the matmul
# weight gradients, which the tiny cases (batch 2) never do (tests/e2e/spmd_deep.sh).
foreach(case gpt2-deep llama-deep)
  if(EXISTS ${HP_SHARED}/reference/${case}/case.json)
    add_test(NAME e2e_spmd_${case}
             COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/spmd_deep.sh $<TARGET_FILE:hp>
                     ${HP_SHARED}/reference/${case})
    set_tests_properties(e2e_spmd_${case} PROPERTIES LABELS e2e TIMEOUT 180)
  else()
    hp_missing_input(e2e_spmd_${case} e2e ${HP_SHARED}/reference/${case})
  endif()
endforeach()

# Multi-device hp train (label e2e): dp2/fsdp2 losses and validation vs one device, YAML keys,
# resume across strategies (tests/e2e/train_spmd.sh).
add_test(NAME e2e_spmd_train COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/train_spmd.sh
                                     $<TARGET_FILE:hp> ${PROJECT_SOURCE_DIR})
set_tests_properties(e2e_spmd_train PROPERTIES LABELS e2e TIMEOUT 180)

# The same step under mpirun, one rank per process (label mpi; runs as root in CI).
if(MPI_FOUND AND MPIEXEC_EXECUTABLE)
  if(EXISTS ${HP_SHARED}/reference/gpt2-tiny/case.json)
    add_test(NAME mpi_spmd_gpt2-tiny
             COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/spmd_mpi.sh $<TARGET_FILE:hp>
                     ${HP_SHARED}/reference/gpt2-tiny ${MPIEXEC_EXECUTABLE})
    set_tests_properties(mpi_spmd_gpt2-tiny PROPERTIES LABELS mpi TIMEOUT 300)
  else()
    hp_missing_input(mpi_spmd_gpt2-tiny mpi ${HP_SHARED}/reference/gpt2-tiny)
  endif()
endif()

# Pipeline strategies (labels e2e; mpi where mpirun runs): every schedule, uneven stages and
# micro-batches against the reference and one device (tests/e2e/pipeline.sh, pp3 under mpirun on
# gpt2-deep); on the cases with 4+ blocks, stages on sub-meshes (dp2, tp2 and 2+1 devices per
# stage, the 2+1 layout under mpirun, checkpoints across layouts: tests/e2e/pipeline_submesh.sh).
foreach(case gpt2-tiny llama-tiny gpt2-deep llama-deep)
  set(scripts pipeline)
  if(case MATCHES "-deep$")
    list(APPEND scripts pipeline_submesh)
  endif()
  foreach(script ${scripts})
    if(NOT EXISTS ${HP_SHARED}/reference/${case}/case.json)
      hp_missing_input(e2e_${script}_${case} e2e ${HP_SHARED}/reference/${case})
      continue()
    endif()
    set(launcher "")
    set(labels e2e)
    if(MPI_FOUND AND MPIEXEC_EXECUTABLE AND (case STREQUAL "gpt2-deep" OR script STREQUAL
                                                                           "pipeline_submesh"))
      set(launcher ${MPIEXEC_EXECUTABLE})
      set(labels "e2e;mpi")
    endif()
    add_test(NAME e2e_${script}_${case}
             COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/${script}.sh $<TARGET_FILE:hp>
                     ${HP_SHARED}/reference/${case} ${launcher})
    set_tests_properties(e2e_${script}_${case} PROPERTIES LABELS "${labels}" TIMEOUT 300)
  endforeach()
endforeach()
# The same on a case kept in the repository (scripts/reference_case.py): a Llama of 4 blocks with
# one key/value head and its head tied to the embedding, whose tp2 stages end in a reduction on
# the chunk's output (overlapped lowering, as under mpirun, once bucketed it with the gradients).
set(mqa_mpi "")
set(mqa_labels e2e)
if(MPI_FOUND AND MPIEXEC_EXECUTABLE)
  set(mqa_mpi ${MPIEXEC_EXECUTABLE})
  set(mqa_labels "e2e;mpi")
endif()
foreach(script pipeline pipeline_submesh)
  add_test(NAME e2e_${script}_llama-mqa
           COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/${script}.sh $<TARGET_FILE:hp>
                   ${PROJECT_SOURCE_DIR}/tests/reference/llama-mqa ${mqa_mpi})
  set_tests_properties(e2e_${script}_llama-mqa PROPERTIES LABELS "${mqa_labels}" TIMEOUT 300)
endforeach()

# Sharded checkpoints: save under fsdp4, resume under other worlds and strategies, corruption,
# failed writers (tests/e2e/ckpt_sharded.sh); hp ckpt export/import (tests/e2e/ckpt_tools.sh).
foreach(t ckpt_sharded ckpt_tools)
  add_test(NAME e2e_${t} COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/${t}.sh $<TARGET_FILE:hp>
                                 ${PROJECT_SOURCE_DIR})
  set_tests_properties(e2e_${t} PROPERTIES LABELS e2e TIMEOUT 300)
endforeach()
# The same under mpirun: every process writes its own file.
if(MPI_FOUND AND MPIEXEC_EXECUTABLE)
  add_test(NAME mpi_ckpt COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/ckpt_mpi.sh $<TARGET_FILE:hp>
                                 ${PROJECT_SOURCE_DIR} ${MPIEXEC_EXECUTABLE})
  set_tests_properties(mpi_ckpt PROPERTIES LABELS mpi TIMEOUT 300)
endif()

# Pipeline timelines and traces (label e2e; mpi where mpirun runs): hp plan --timeline (modelled
# and --profile costs), hp train --trace parsed and checked against the schedule, on threads:2,
# for dp2, and under mpirun -np 2 (tests/e2e/pipeline_trace.sh, tests/e2e/trace_check.py).
if(MPI_FOUND AND MPIEXEC_EXECUTABLE)
  add_test(NAME e2e_pipeline_trace COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/pipeline_trace.sh
                                           $<TARGET_FILE:hp> ${MPIEXEC_EXECUTABLE})
  set_tests_properties(e2e_pipeline_trace PROPERTIES LABELS "e2e;mpi" TIMEOUT 300)
else()
  add_test(NAME e2e_pipeline_trace COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/pipeline_trace.sh
                                           $<TARGET_FILE:hp>)
  set_tests_properties(e2e_pipeline_trace PROPERTIES LABELS e2e TIMEOUT 300)
endif()
