/* The completion callback of PMIx_Fence_nb (pmix_op_cbfunc_t). PMIx calls it on its own progress
 * thread, where no JavaScript may run: it only stores the fence's status into the 32-bit word that
 * cbdata points at (one aligned store, so the polling thread sees either the pending marker or the
 * status, never a torn value). ffi/pmix.ts compiles it with bun:ffi's cc at the first nonblocking
 * fence and polls the word from the event loop. */
void alloctools_pmix_fence_done(int status, void *cbdata) {
    *(volatile int *)cbdata = status;
}
