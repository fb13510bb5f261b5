"""Reports of the RTMaps stand-in, kept for tests to read."""

messages = []


def report_info(text):
    messages.append(("info", str(text)))


def report_warning(text):
    messages.append(("warning", str(text)))


def report_error(text):
    messages.append(("error", str(text)))
