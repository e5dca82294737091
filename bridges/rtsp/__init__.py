"""The RTSP bridge: sampled frames of many camera streams into images.raw."""
