/* Blob entry at offset 0: rdi = struct rst_args*, rsi = stack top. */
  .text
  .globl _start
_start:
  mov %rsi, %rsp
  xor %ebp, %ebp
  call restorer_main
  ud2
  .section .note.GNU-stack,"",@progbits
