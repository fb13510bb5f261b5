"""``BaseComponent`` of the RTMaps stand-in: inputs, outputs and properties as data."""

from rtmaps import types


class Property:
    def __init__(self, default, subtype=None):
        self.subtype = subtype
        self.choices = None
        if subtype == types.ENUM:
            # "count|selected index|first|second|..." → data is the selected index
            count, selected, *choices = str(default).split("|")
            assert int(count) == len(choices), f"bad ENUM definition {default!r}"
            self.choices = choices
            self.data = int(selected)
        else:
            self.data = default


class Input:
    def __init__(self, kind):
        self.kind = kind
        self.ioelt = None


class Output:
    def __init__(self, kind, buffer_size=None):
        self.kind = kind
        self.buffer_size = buffer_size
        self.written = []

    def write(self, element):
        if not isinstance(element, types.Ioelt):
            element = types.Ioelt(element)
        self.written.append(element)


class BaseComponent:
    def __init__(self):
        self.inputs = {}
        self.outputs = {}
        self.properties = {}

    def add_input(self, name, kind):
        self.inputs[name] = Input(kind)

    def add_output(self, name, kind, buffer_size=None):
        self.outputs[name] = Output(kind, buffer_size)

    def add_property(self, name, default, subtype=None):
        self.properties[name] = Property(default, subtype)

    def write(self, name, element):
        self.outputs[name].write(element)
