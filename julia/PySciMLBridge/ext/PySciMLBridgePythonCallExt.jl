"""
Python values at the bridge's boundary: NumPy buffers returned by torch callbacks (read
through `PyArray`, no copy until the solver's own array is filled), tuples and option
dictionaries.
"""
module PySciMLBridgePythonCallExt

using PySciMLBridge: PySciMLBridge
using PythonCall: Py, PyArray, PyDict, pyconvert

function PySciMLBridge.as_dense(x::Py, like::AbstractArray)
    buffer = PyArray(x)
    # the same values in the same (column-major) order: a state the solver holds as a vector
    # of length N·B is the N × B batch the callback returns
    length(buffer) == length(like) ||
        throw(DimensionMismatch("a callback returned shape $(size(buffer)) (Julia order), expected $(size(like))"))
    return copyto!(similar(like), buffer)
end

PySciMLBridge.as_pair(x::Py) = pyconvert(Tuple{Py, Py}, x)

PySciMLBridge.options_dict(d::Py) = pyconvert(Dict{String, Any}, d)
PySciMLBridge.options_dict(d::PyDict) = pyconvert(Dict{String, Any}, Py(d))

end # module PySciMLBridgePythonCallExt
