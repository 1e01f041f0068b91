# A compile-fail check, run by ctest as `cmake -P check.cmake` with
#   COMPILER, INCLUDE (mproc's include dir), SOURCE, DEFINES (;-list, may be empty),
#   EXPECT (text the first error line must contain), TYPE (text the first
#   error or the notes that come with it must contain: the offending type).
# Compiles SOURCE twice with -fsyntax-only: with -DMPROC_EXPECT_OK it must
# succeed (the setup works), without it it must fail as described.
set(flags -std=c++20 -fsyntax-only -I${INCLUDE})
foreach(d IN LISTS DEFINES)
    list(APPEND flags -D${d})
endforeach()

execute_process(COMMAND ${COMPILER} ${flags} -DMPROC_EXPECT_OK ${SOURCE}
                RESULT_VARIABLE ok_rc OUTPUT_VARIABLE ok_out ERROR_VARIABLE ok_err)
if(NOT ok_rc EQUAL 0)
    message(FATAL_ERROR "the positive control did not compile:\n${ok_out}${ok_err}")
endif()

execute_process(COMMAND ${COMPILER} ${flags} ${SOURCE}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
    message(FATAL_ERROR "${SOURCE} compiled, but must fail")
endif()
string(REPLACE "\n" ";" lines "${out}${err}")
# The first error and what the compiler says with it (its notes, source
# excerpt), up to the next diagnostic that is not a note.
set(first "")
set(block "")
set(found FALSE)
foreach(line IN LISTS lines)
    if(found)
        if(line MATCHES "error|In instantiation|required from|In function")
            break()
        endif()
        string(APPEND block "${line}\n")
    elseif(line MATCHES "error")
        set(first "${line}")
        set(block "${line}\n")
        set(found TRUE)
    endif()
endforeach()
string(FIND "${first}" "${EXPECT}" at)
if(at EQUAL -1)
    message(FATAL_ERROR "the first error is not mproc's static_assert (\"${EXPECT}\"):\n${first}\n\nfull output:\n${out}${err}")
endif()
string(FIND "${block}" "${TYPE}" at)
if(at EQUAL -1)
    message(FATAL_ERROR "the first error does not name ${TYPE}:\n${block}")
endif()
message(STATUS "first error: ${first}")
