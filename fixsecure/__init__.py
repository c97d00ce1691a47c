"""fixsecure: end-to-end encryption for FIX sessions.

The Logon carries a Noise_KK handshake; every later message keeps its standard header in clear
(authenticated) and carries its body AEAD-encrypted in SecureData(91).
The protocol is specified in ``specs/fixsecure-v1.md``.
"""

__version__ = "0.1.0"
