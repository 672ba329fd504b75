"""
CUDA arrays at the bridge's boundary, shared with torch through DLPack without copies. DLPack
reverses the dimensions of a row-major tensor, which is the bridge's layout rule: torch's
`(B, N)` is Julia's `N × B`.
"""
module PySciMLBridgeDLPackExt

using CUDA: CuArray
using DLPack: DLPack
using PySciMLBridge: PySciMLBridge
using PythonCall: PythonCall, Py, pyimport

const TORCH_FROM_DLPACK = PythonCall.pynew()

function __init__()
    PythonCall.pycopy!(TORCH_FROM_DLPACK, pyimport("torch").from_dlpack)
end

PySciMLBridge.wrap_cuda(x::Py) = DLPack.from_dlpack(x)

PySciMLBridge.share_cuda(x::CuArray) = DLPack.share(x, TORCH_FROM_DLPACK)

PySciMLBridge.to_callback(x::CuArray) = DLPack.share(x, TORCH_FROM_DLPACK)

PySciMLBridge.host_state(x::CuArray) = x

PySciMLBridge.parameter_vector(p::CuArray, ::Type{T}) where {T} = CuArray{T}(vec(p))

function PySciMLBridge.as_dense(x::Py, like::CuArray)
    shared = DLPack.from_dlpack(x)
    # the same values in the same (column-major) order: a state the solver holds as a vector
    # of length N·B is the N × B batch the callback returns
    length(shared) == length(like) ||
        throw(DimensionMismatch("a callback returned shape $(size(shared)) (Julia order), expected $(size(like))"))
    return copyto!(similar(like), shared)
end

end # module PySciMLBridgeDLPackExt
