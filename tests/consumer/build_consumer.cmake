# cmake -P script: builds tests/consumer/project against mproc and runs it.
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})

function(run)
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}")
    endif()
    message("${out}")
endfunction()

set(flags -DCMAKE_CXX_COMPILER=${CXX} "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
    "-DCMAKE_EXE_LINKER_FLAGS=${LINK_FLAGS}")
if(MODE STREQUAL "find_package")
    run(${CMAKE_COMMAND} --install ${MPROC_BUILD} --prefix ${WORK}/prefix)
    run(${CMAKE_COMMAND} -S ${PROJECT_DIR} -B ${WORK}/build ${flags}
        -DCMAKE_PREFIX_PATH=${WORK}/prefix -DCONSUMER_MODE=find_package)
else()
    run(${CMAKE_COMMAND} -S ${PROJECT_DIR} -B ${WORK}/build ${flags}
        -DCONSUMER_MODE=add_subdirectory -DMPROC_SOURCE=${MPROC_SOURCE})
endif()
run(${CMAKE_COMMAND} --build ${WORK}/build -j 2)
run(${WORK}/build/consumer)
