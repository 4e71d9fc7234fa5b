# The kernels' load notice (csrc/_load.h), attached to the process's one state in
# seqcore._kernels.load: included by every kernel module.
from cpython.pycapsule cimport PyCapsule_GetPointer

from _packed cimport sc_load_attach

from seqcore._kernels.load import STATE as _LOAD_STATE

sc_load_attach(PyCapsule_GetPointer(_LOAD_STATE, b"seqcore._kernels.load.STATE"))
