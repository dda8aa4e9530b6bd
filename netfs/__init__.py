"""The file-service layer: what a pyctdb node serves and how it tells it is healthy.

``shares`` (the declarative share list), ``render`` (smb.conf and ganesha.conf from it,
and their checks), ``health`` (is smbd or Ganesha serving), ``ganesha`` (Ganesha's
D-Bus API: grace periods, exports), ``dbus`` and ``systemd`` (D-Bus clients), ``cli``
(``netfs-render``).
"""
