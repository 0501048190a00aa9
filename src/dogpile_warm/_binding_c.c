/* dogpile_warm._binding_c: a warmable method's binding, in C.
 *
 * ``shop.price(1)`` looks ``price`` up (the descriptor protocol binds the
 * proxy to ``shop``) and calls what that returns. In Python the binding is a
 * ``__get__`` frame and a ``functools.partial`` subclass, whose calls CPython
 * 3.11 makes through ``tp_call`` (a heap type never gets vectorcall): together
 * about as long as the memory hit itself. Here both are C, as a bound method
 * is for a plain function:
 *
 * - ``Binding`` is a mixin with no fields of its own (so it goes beside
 *   wrapt's proxy type). Calling the proxy calls its ``_self_call`` (a plain
 *   function's read path, see wrappers.py) with no frame in between. Its
 *   ``__get__`` reads the proxy's ``_self_fast_binding``: ``(read,
 *   binds_class)`` binds the method's read path to the instance, or to the
 *   class for a classmethod; ``()`` (a staticmethod) returns the proxy as it
 *   is; anything else, or a method looked up on its class, asks the proxy's
 *   ``_bind_slowly``.
 * - ``BoundMethod`` is what that binding returns: calling it calls
 *   ``read(target, *args, **kwargs)`` by vectorcall, as ``types.MethodType``
 *   does. ``__func__`` is the proxy, as a bound method's is the function in
 *   its class, and ``BoundMethod(proxy, target)`` binds it again (what
 *   ``weakref.WeakMethod`` does). Every attribute it does not have itself,
 *   its ``__doc__``, ``__module__``, repr and pickled form come from the hook
 *   ``set_attribute_hook`` installs (``bound_attribute`` in
 *   dogpile_warm/_binding.py), so ``shop.price.warm(x)``, ``__wrapped__``
 *   and the signature are what they are without it.
 *
 * dogpile_warm/_binding.py has the same binding in Python, used where this
 * extension was not built; tests run both.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

static PyObject *attribute_hook = NULL; /* hook(bound, name) */
static PyObject *str_binding = NULL;    /* "_self_fast_binding" */
static PyObject *str_bind_slowly = NULL; /* "_bind_slowly" */
static PyObject *str_call = NULL;       /* "_self_call" */
static PyObject *str_repr = NULL;       /* "__repr__" */
static PyObject *str_reduce = NULL;     /* "__reduce__" */

/* -- BoundMethod ------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *read;   /* the method's read path: read(target, *args, **kwargs) */
    PyObject *target; /* the instance, or a classmethod's class */
    PyObject *weakreflist;
    vectorcallfunc vectorcall;
} BoundObject;

static PyTypeObject BoundType;

static PyObject *
bound_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    /* types.MethodType's own way: the target goes in front of the arguments,
     * in the slot the caller left free when it could, else in a copy. */
    BoundObject *self = (BoundObject *)op;
    if (self->read == NULL) { /* cleared by the collector, seen by a finaliser */
        PyErr_SetString(PyExc_ReferenceError, "a bound warmable method used after it was cleared");
        return NULL;
    }
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t total = nargs + (kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames));
    PyObject *result;
    if (nargsf & PY_VECTORCALL_ARGUMENTS_OFFSET) {
        PyObject **shifted = (PyObject **)args - 1;
        PyObject *saved = shifted[0];
        shifted[0] = self->target;
        result = PyObject_Vectorcall(self->read, shifted, nargs + 1, kwnames);
        shifted[0] = saved;
        return result;
    }
    PyObject *small[8];
    PyObject **stack = small;
    if (total + 1 > (Py_ssize_t)(sizeof(small) / sizeof(small[0]))) {
        stack = PyMem_Malloc((total + 1) * sizeof(PyObject *));
        if (stack == NULL) {
            return PyErr_NoMemory();
        }
    }
    stack[0] = self->target;
    if (total > 0) {
        memcpy(stack + 1, args, total * sizeof(PyObject *));
    }
    result = PyObject_Vectorcall(self->read, stack, nargs + 1, kwnames);
    if (stack != small) {
        PyMem_Free(stack);
    }
    return result;
}

static PyObject *
bound_new(PyObject *read, PyObject *target)
{
    /* Held before allocating: ``read`` may be borrowed from the proxy's dict, and
     * an allocation can run the garbage collector, and any finaliser with it. */
    Py_INCREF(read);
    Py_INCREF(target);
    BoundObject *self = PyObject_GC_New(BoundObject, &BoundType);
    if (self == NULL) {
        Py_DECREF(read);
        Py_DECREF(target);
        return NULL;
    }
    self->read = read;
    self->target = target;
    self->weakreflist = NULL;
    self->vectorcall = bound_vectorcall;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static PyObject *
bound_tp_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    /* BoundMethod(func, target): func's binding to target, as WeakMethod rebuilds
     * a bound method from its __func__ (the proxy) and __self__. */
    PyObject *func, *target;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "BoundMethod() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "BoundMethod", 2, 2, &func, &target)) {
        return NULL;
    }
    PyObject *binding = PyObject_GetAttr(func, str_binding);
    if (binding == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return NULL;
        }
        PyErr_Clear();
    }
    PyObject *bound = NULL;
    if (binding != NULL && PyTuple_CheckExact(binding) && PyTuple_GET_SIZE(binding) == 2) {
        bound = bound_new(PyTuple_GET_ITEM(binding, 0), target);
    }
    else {
        PyErr_Format(PyExc_TypeError,
                     "BoundMethod() takes a warmable method and its instance (or a "
                     "classmethod's class), got %R",
                     func);
    }
    Py_XDECREF(binding);
    return bound;
}

static int
bound_traverse(BoundObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->read);
    Py_VISIT(self->target);
    return 0;
}

static int
bound_clear(BoundObject *self)
{
    Py_CLEAR(self->read);
    Py_CLEAR(self->target);
    return 0;
}

static void
bound_dealloc(BoundObject *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    bound_clear(self);
    PyObject_GC_Del(self);
}

static PyObject *
ask_hook(PyObject *self, PyObject *name)
{
    if (attribute_hook == NULL) {
        PyErr_Format(PyExc_AttributeError, "%R has no attribute %R (no hook installed)",
                     self, name);
        return NULL;
    }
    return PyObject_CallFunctionObjArgs(attribute_hook, self, name, NULL);
}

static PyObject *
bound_getattro(PyObject *self, PyObject *name)
{
    PyObject *found = PyObject_GenericGetAttr(self, name);
    if (found != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError)) {
        return found;
    }
    PyErr_Clear();
    return ask_hook(self, name);
}

static PyObject *
bound_repr(PyObject *self)
{
    return ask_hook(self, str_repr);
}

static PyObject *
bound_reduce(PyObject *self, PyObject *unused)
{
    return ask_hook(self, str_reduce);
}

static PyObject *
bound_get_from_hook(PyObject *self, void *closure)
{
    return ask_hook(self, (PyObject *)closure);
}

static PyObject *
bound_get_class(PyObject *self, void *closure)
{
    /* What a bound method answers (inspect.ismethod, inspect.signature). */
    return Py_NewRef((PyObject *)&PyMethod_Type);
}

static PyObject *
bound_richcompare(PyObject *self, PyObject *other, int op)
{
    if ((op != Py_EQ && op != Py_NE) || !Py_IS_TYPE(other, &BoundType)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    BoundObject *a = (BoundObject *)self, *b = (BoundObject *)other;
    int same = a->read == b->read && a->target == b->target;
    return PyBool_FromLong(op == Py_EQ ? same : !same);
}

static Py_hash_t
bound_hash(PyObject *op)
{
    BoundObject *self = (BoundObject *)op;
    /* by identity, as the comparison: functions hash by identity */
    Py_hash_t read = self->read == NULL ? 0 : PyObject_Hash(self->read);
    if (read == -1) {
        return -1;
    }
    size_t x = (size_t)read ^ ((size_t)(uintptr_t)self->target >> 4) * 1000003U;
    Py_hash_t hash = (Py_hash_t)x;
    return hash == -1 ? -2 : hash;
}

static PyMemberDef bound_members[] = {
    {"_read", T_OBJECT, offsetof(BoundObject, read), READONLY, "the method's read path"},
    {"_target", T_OBJECT, offsetof(BoundObject, target), READONLY,
     "the instance, or a classmethod's class"},
    {"__self__", T_OBJECT, offsetof(BoundObject, target), READONLY,
     "the instance, or a classmethod's class"},
    {NULL},
};

static PyMethodDef bound_methods[] = {
    /* as a bound method pickles: getattr(target, name) */
    {"__reduce__", bound_reduce, METH_NOARGS, NULL},
    {NULL},
};

static PyGetSetDef bound_getset[] = {
    {"__class__", bound_get_class, NULL, NULL, NULL},
    /* closure: the name the hook is asked for (filled in at module init) */
    {"__doc__", bound_get_from_hook, NULL, NULL, NULL},
    {"__module__", bound_get_from_hook, NULL, NULL, NULL},
    {NULL},
};

static PyTypeObject BoundType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dogpile_warm._binding_c.BoundMethod",
    .tp_doc = "A warmable method bound to its instance (a classmethod to its class).",
    .tp_basicsize = sizeof(BoundObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = bound_tp_new,
    .tp_vectorcall_offset = offsetof(BoundObject, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_dealloc = (destructor)bound_dealloc,
    .tp_traverse = (traverseproc)bound_traverse,
    .tp_clear = (inquiry)bound_clear,
    .tp_getattro = bound_getattro,
    .tp_repr = bound_repr,
    .tp_richcompare = bound_richcompare,
    .tp_hash = bound_hash,
    .tp_weaklistoffset = offsetof(BoundObject, weakreflist),
    .tp_methods = bound_methods,
    .tp_members = bound_members,
    .tp_getset = bound_getset,
};

/* -- Binding ------------------------------------------------------------- */

/* What the proxy keeps under ``name`` in its own dict (a new reference: what
 * runs next may replace it), or NULL: with an exception set if reading failed,
 * without one if it has nothing there. */
static PyObject *
proxy_item(PyObject *self, PyObject *name)
{
    PyObject *dict = PyObject_GenericGetDict(self, NULL);
    if (dict == NULL) {
        return NULL;
    }
    PyObject *item = PyDict_GetItemWithError(dict, name);
    Py_XINCREF(item);
    Py_DECREF(dict);
    return item;
}

static PyObject *
bind(PyObject *self, PyObject *binding, PyObject *obj, PyObject *type)
{
    if (PyTuple_CheckExact(binding) && PyTuple_GET_SIZE(binding) == 0) {
        return Py_NewRef(self); /* a staticmethod: not bound at all */
    }
    if (PyTuple_CheckExact(binding) && PyTuple_GET_SIZE(binding) == 2) {
        PyObject *read = PyTuple_GET_ITEM(binding, 0);
        if (PyTuple_GET_ITEM(binding, 1) == Py_True) { /* a classmethod: its class */
            if (type != NULL) {
                return bound_new(read, type);
            }
            if (obj != NULL) {
                return bound_new(read, (PyObject *)Py_TYPE(obj));
            }
        }
        else if (obj != NULL) {
            return bound_new(read, obj);
        }
    }
    return PyObject_CallMethodObjArgs(self, str_bind_slowly, obj == NULL ? Py_None : obj,
                                      type == NULL ? Py_None : type, NULL);
}

static PyObject *
binding_get(PyObject *self, PyObject *obj, PyObject *type)
{
    PyObject *binding = proxy_item(self, str_binding);
    if (binding == NULL && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *bound = bind(self, binding == NULL ? Py_None : binding,
                           obj == Py_None ? NULL : obj, type == Py_None ? NULL : type);
    Py_XDECREF(binding);
    return bound;
}

static PyObject *
binding_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    /* Calling the proxy calls its _self_call: a plain function's read path (or
     * wrapt's call), with the arguments as they came, by vectorcall. */
    PyObject *call = proxy_item(self, str_call);
    if (call == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_TypeError, "%s object has no _self_call to call",
                         Py_TYPE(self)->tp_name);
        }
        return NULL;
    }
    PyObject *result;
    if (kwargs == NULL || PyDict_GET_SIZE(kwargs) == 0) {
        result = PyObject_Vectorcall(call, &PyTuple_GET_ITEM(args, 0), PyTuple_GET_SIZE(args),
                                     NULL);
    }
    else {
        result = PyObject_Call(call, args, kwargs);
    }
    Py_DECREF(call);
    return result;
}

static PyTypeObject BindingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dogpile_warm._binding_c.Binding",
    .tp_doc = "A mixin binding a warmable method in C (see the module's source).",
    .tp_basicsize = sizeof(PyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_descr_get = binding_get,
    .tp_call = binding_call,
};

/* -- module -------------------------------------------------------------- */

static PyObject *
set_attribute_hook(PyObject *module, PyObject *hook)
{
    if (!PyCallable_Check(hook)) {
        PyErr_Format(PyExc_TypeError, "the attribute hook must be callable, got %R", hook);
        return NULL;
    }
    Py_INCREF(hook);
    Py_XSETREF(attribute_hook, hook);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"set_attribute_hook", set_attribute_hook, METH_O,
     "Install hook(bound, name): a BoundMethod's attributes it has not itself."},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "dogpile_warm._binding_c",
    .m_doc = "A warmable method's binding, in C (see dogpile_warm/_binding.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__binding_c(void)
{
    str_binding = PyUnicode_InternFromString("_self_fast_binding");
    str_bind_slowly = PyUnicode_InternFromString("_bind_slowly");
    str_call = PyUnicode_InternFromString("_self_call");
    str_repr = PyUnicode_InternFromString("__repr__");
    str_reduce = PyUnicode_InternFromString("__reduce__");
    PyObject *str_doc = PyUnicode_InternFromString("__doc__");
    PyObject *str_module = PyUnicode_InternFromString("__module__");
    if (!str_binding || !str_bind_slowly || !str_call || !str_repr || !str_reduce || !str_doc || !str_module) {
        return NULL;
    }
    bound_getset[1].closure = str_doc; /* kept for the life of the process */
    bound_getset[2].closure = str_module;
    /* object's own __new__: a class mixing Binding with a proxy written in Python
     * (wrapt without its extension) is then made by object.__new__, which
     * refuses a static base with a __new__ of its own. */
    BindingType.tp_new = PyBaseObject_Type.tp_new;
    if (PyType_Ready(&BoundType) < 0 || PyType_Ready(&BindingType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "BoundMethod", (PyObject *)&BoundType) < 0
        || PyModule_AddObjectRef(module, "Binding", (PyObject *)&BindingType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
