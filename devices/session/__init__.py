"""The session folder: the on-disk form of captured chunks, its writer and its reader.

Session folder format (``format_version`` 1)::

    session.json              metadata, rewritten atomically (tmp + os.replace) at every flush
    video/000000.mkv ...      video stream "video": short self-contained segments (see below)
    video_timestamps.csv      frame,segment,host_time  (one row per frame)
    audio.wav                 PCM 16-bit, written incrementally with soundfile
    audio_timestamps.csv      first_sample,count,first_time,last_time  (one row per block)
    imu.csv                   host_time,ax,ay,az,gx,gy,gz  (one row per sample)

File stems are the modality for the first stream of each modality (so a session with one
camera, one microphone and one IMU has exactly the names above); further streams of the same
modality use ``<modality>_<stream name>``. ``session.json["streams"]`` names every stream's
files, so readers never guess.

Crash safety ("after ``kill -9``, everything up to the last flush is readable"): a flush
happens at least every ``flush_interval`` seconds (0.5 s by default, from a background thread,
so it also happens when no chunk arrives). A flush writes the CSV and WAV buffers to the OS,
rewrites ``session.json`` atomically and **closes the current video segment**. An MP4/MKV
file is only complete once its writer is released (an MP4 without its ``moov`` atom is
unreadable), so video is NOT one ``video.mp4`` but a folder of segments, each a complete file
holding at most one flush interval of frames; only the segment open at the moment of a crash
can be lost or partial. The default codec is FFV1 in Matroska (``.mkv``): lossless, so pixels
round-trip exactly, and grayscale frames (``[H, W, 1]``) are stored as gray and read back as
``[H, W, 1]``. ``video_codec="mp4v"`` (``.mp4``) or ``"mjpg"`` (``.avi``) trade exactness for
size. The WAV header is finalised only on close; :class:`SessionReader` recovers the PCM data
of an unfinalised WAV from the file size. Truncated CSV tails (a partial last line) are
dropped and reported.

Timestamps are host-monotonic seconds, exactly as the chunks carried them (written with 17
significant digits, so they round-trip bit-exactly). Audio samples inside a block get times
interpolated linearly between the block's first and last timestamp.

Extra top-level keys (who was recorded, which data set a trial came from, the demo's trial list)
come from ``SessionWriter(..., metadata=...)`` / :meth:`SessionWriter.update_metadata` and are
read back as :attr:`SessionReader.metadata`; they may not reuse a key the format writes
(:data:`SESSION_KEYS`).

Modules: :mod:`~devices.session.format` (names, constants, :class:`SessionError`,
:class:`StreamData`), :mod:`~devices.session.writer` (:class:`SessionWriter`) and
:mod:`~devices.session.reader` (:class:`SessionReader`). Names are imported lazily, so using the
format's names or :class:`StreamData` does not load OpenCV and libsndfile.
"""

from __future__ import annotations

from mmg_common.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "FORMAT_NAME": "format",
    "FORMAT_VERSION": "format",
    "IMU_COLUMNS": "format",
    "SESSION_JSON": "format",
    "SESSION_KEYS": "format",
    "VIDEO_CODECS": "format",
    "SessionError": "format",
    "StreamData": "format",
    "stream_key": "format",
    "SessionWriter": "writer",
    "SessionReader": "reader",
})
