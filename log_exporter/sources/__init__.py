"""Where lines come from: bytes -> ``Batch``es of whole lines, knowing nothing of what they mean.

``framing`` cuts byte chunks into whole lines (``LineFramer``, oversized lines skipped in bounded
memory); ``files`` reads replay's input files (plain or gzip, checked, oldest first); ``tail``
follows the live log across rotations. Imports no sink and no command.
"""
