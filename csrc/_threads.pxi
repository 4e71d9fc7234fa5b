# The thread count of a kernel module (included by each cell's .pyx: one per module).
# seqcore.set_num_threads sets it in every module; the kernels read it once per call.
cdef int _threads = 1


def set_num_threads(int n):
    global _threads
    _threads = n if n > 0 else 1


def get_num_threads():
    return _threads
