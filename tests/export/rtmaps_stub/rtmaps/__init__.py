"""A minimal stand-in for RTMaps' Python API, for tests only (RTMaps is proprietary).

It models what kprune's component uses, as RTMaps' Python bridge documents it:
``rtmaps.base_component.BaseComponent`` with add_input / add_output /
add_property, ``self.inputs[name].ioelt``, ``self.outputs[name].write(ioelt)``,
``self.properties[name].data`` (an ENUM property's data is the selected index),
``rtmaps.types`` (type constants, Ioelt, IplImage) and ``rtmaps.core`` reports.
"""
