# The blob runs at an address unknown at link time and nothing relocates it:
# an absolute relocation would silently point into the void, so refuse it.
string(REPLACE ":" ";" OBJ_LIST "${OBJS}")
foreach(obj ${OBJ_LIST})
  execute_process(COMMAND objdump -r ${obj} OUTPUT_VARIABLE relocs)
  if(relocs MATCHES "R_X86_64_(64|32S|32) ")
    message(FATAL_ERROR "restorer: ${obj} has absolute relocations:\n${relocs}")
  endif()
endforeach()
