"""Media layer: RTP/RTCP sessions, playout, codecs, DTMF and audio devices.

Nothing here imports aiortc or PyAV at import time (aiortc costs ~1.7 s): see
`softphone.media.rtp.preload()`.
"""
