"""Media layer: RTP/RTCP sessions, playout, codecs, DTMF and audio devices.

`rtp.RtpSession` is what the call layer drives; it composes `sender.RtpSender`,
`receiver.RtpReceiver` and `rtcp.RtcpReporter` around a shared `remote.Remote` and
`stats.Counters`, all paced by the process-wide `ticker.Ticker`. `devices/` holds one
module per kind of audio source or sink. Nothing here imports the SIP, UA or UI layers.

Nothing here imports aiortc or PyAV at import time (~0.15 s and ~18 MB that an idle phone
need not hold): the first call loads them, see
`softphone.media.rtp.preload()`.
"""
