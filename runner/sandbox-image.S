/*
 * cbuild-sandbox, carried inside cbuild as read-only data: runner_run()
 * copies it to a sealed memfd once per process and executes that, so that
 * cbuild stays one file wherever it is copied.  SANDBOX_IMAGE is the
 * program's path, given by the Makefile.
 */
	.section .rodata
	.balign 16
	.globl runner_sandbox_image
	.type runner_sandbox_image, @object
runner_sandbox_image:
	.incbin SANDBOX_IMAGE
	.globl runner_sandbox_image_end
	.type runner_sandbox_image_end, @object
runner_sandbox_image_end:
	.byte 0
	.section .note.GNU-stack,"",@progbits
