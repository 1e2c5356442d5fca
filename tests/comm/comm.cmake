# Communicator tests beyond the auto-registered comm_test (threads, nccl): the MPI backend under
# mpirun -np 4 (label mpi), and two failure scenarios checked through the survivors' reports.
if(MPI_FOUND AND TARGET hp_comm)
  add_executable(comm_mpi ${CMAKE_CURRENT_LIST_DIR}/comm_mpi.cpp)
  target_link_libraries(comm_mpi PRIVATE hp_comm GTest::gtest)
  set(hp_mpirun ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe)
  add_test(NAME comm_mpi COMMAND ${hp_mpirun} -np 4 $<TARGET_FILE:comm_mpi>)
  set_tests_properties(comm_mpi PROPERTIES LABELS mpi TIMEOUT 120)
  foreach(mode kill throw)
    add_test(NAME comm_mpi_${mode}
             COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/comm_mpi_failure.sh ${MPIEXEC_EXECUTABLE}
                     $<TARGET_FILE:comm_mpi> ${mode} ${CMAKE_CURRENT_BINARY_DIR}/comm_mpi_${mode} 4)
    set_tests_properties(comm_mpi_${mode} PROPERTIES LABELS mpi TIMEOUT 120)
  endforeach()
endif()
