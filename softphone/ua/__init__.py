"""The user agent on asyncio, and the public API every face uses: ``phone.Phone``
(commands in, typed events out), ``commands.COMMANDS``, ``events``.

Layers point one way: faces (cli, tui) → ``phone`` → the rest of ``ua`` → ``sip``,
``media``, ``transport``. Nothing here imports a face.
"""
