"""Type constants and data holders of the RTMaps stand-in."""

ANY = "ANY"
AUTO = "AUTO"
IPL_IMAGE = "IPL_IMAGE"
INTEGER64 = "INTEGER64"
FLOAT32 = "FLOAT32"
FLOAT64 = "FLOAT64"
TEXT_ASCII = "TEXT_ASCII"
FILE = "FILE"
ENUM = "ENUM"


class Ioelt:
    """One timestamped sample on a wire."""

    def __init__(self, data=None, ts=0):
        self.data = data
        self.ts = ts


class IplImage:
    """An image: ``image_data`` (H×W×C uint8), colour model and channel sequence."""

    def __init__(self, image_data=None, color_model="COLR", channel_seq="RGB"):
        self.image_data = image_data
        self.color_model = color_model
        self.channel_seq = channel_seq
