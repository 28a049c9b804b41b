// Minimal stackful coroutines for the harness's CUDA threads.
//
// On x86-64 a hand-written switch saves only what the System V ABI makes callee-saved
// (rbx, rbp, r12-r15, the stack pointer, MXCSR and the x87 control word): about a
// hundred times cheaper than swapcontext, which makes a signal-mask system call on every
// switch. Elsewhere ucontext does the job.
#pragma once

#include <cstddef>

#if defined(__x86_64__)

namespace emu {

struct Context {
    void* sp = nullptr;
};

extern "C" void emu_context_switch(void** save_sp, void* load_sp);
extern "C" void emu_context_start();

asm(R"(
    .text
    .globl emu_context_switch
    .type emu_context_switch, @function
emu_context_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_context_switch, .-emu_context_switch

    .globl emu_context_start
    .type emu_context_start, @function
emu_context_start:
    movq %rbx, %rax
    andq $-16, %rsp
    callq *%rax
    ud2
    .size emu_context_start, .-emu_context_start
)");

// Prepares `c` to start `entry` (which must never return) on the given stack.
inline void context_init(Context* c, char* stack, size_t bytes, void (*entry)()) {
    auto* top = reinterpret_cast<unsigned long long*>(
        (reinterpret_cast<unsigned long long>(stack + bytes) & ~15ull));
    unsigned long long* sp = top - 8;
    unsigned int mxcsr = 0;
    unsigned short fpucw = 0;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpucw));
    sp[0] = mxcsr | (static_cast<unsigned long long>(fpucw) << 32);
    sp[1] = 0;                                                 // r15
    sp[2] = 0;                                                 // r14
    sp[3] = 0;                                                 // r13
    sp[4] = 0;                                                 // r12
    sp[5] = reinterpret_cast<unsigned long long>(entry);       // rbx: called by the start stub
    sp[6] = 0;                                                 // rbp
    sp[7] = reinterpret_cast<unsigned long long>(&emu_context_start);  // return address
    c->sp = sp;
}

inline void context_switch(Context* from, Context* to) { emu_context_switch(&from->sp, to->sp); }

}  // namespace emu

#else

#include <ucontext.h>

namespace emu {

struct Context {
    ucontext_t uc;
};

inline void context_init(Context* c, char* stack, size_t bytes, void (*entry)()) {
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = stack;
    c->uc.uc_stack.ss_size = bytes;
    c->uc.uc_link = nullptr;
    makecontext(&c->uc, entry, 0);
}

inline void context_switch(Context* from, Context* to) { swapcontext(&from->uc, &to->uc); }

}  // namespace emu

#endif
