"""File-level access to backed-up volumes: partition tables, filesystems, diffs (``doc/file-restore.md``).

A storage layer like the data mover: it reads through a
:class:`~strongroom.datamover.reader.BlockReader` and imports no service layer.
"""
