# Debian package: `cpack -G DEB` in a build directory writes deliverd_<version>-<release>_<arch>.deb.
# The deliverd binary's own install() rule is in daemon/CMakeLists.txt (DESTINATION sbin, i.e.
# /usr/sbin below CPACK_PACKAGING_INSTALL_PREFIX); everything else a Debian service needs is here.

set(DELIVERD_DEB_RELEASE 1)
set(DELIVERD_MAINTAINER "deliverd maintainers <maintainers@users.noreply.r-seed-03bd7588.example>")
set(pkg_dir ${CMAKE_BINARY_DIR}/packaging)
file(MAKE_DIRECTORY ${pkg_dir}/man ${pkg_dir}/debian)

# Compressed at configure time (gzip -n: no name or time stamp, so rebuilds are byte-identical);
# an edit to a source re-runs the configure step.
function(deliverd_gzip src dst)
  execute_process(COMMAND gzip -9nc ${src} OUTPUT_FILE ${dst} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "gzip ${src} failed")
  endif()
  set_property(DIRECTORY ${CMAKE_SOURCE_DIR} APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${src})
endfunction()

deliverd_gzip(${CMAKE_SOURCE_DIR}/docs/man/deliverd.8 ${pkg_dir}/man/deliverd.8.gz)
deliverd_gzip(${CMAKE_SOURCE_DIR}/docs/man/deliverd.toml.5 ${pkg_dir}/man/deliverd.toml.5.gz)

string(TIMESTAMP changelog_date "%a, %d %b %Y %H:%M:%S +0000" UTC)
# SOURCE_DATE_EPOCH (reproducible builds) wins over the clock when set.
file(WRITE ${pkg_dir}/changelog.Debian
"deliverd (${PROJECT_VERSION}-${DELIVERD_DEB_RELEASE}) bookworm; urgency=medium

  * Package built from the deliverd source tree (CMake/CPack).

 -- ${DELIVERD_MAINTAINER}  ${changelog_date}
")
deliverd_gzip(${pkg_dir}/changelog.Debian ${pkg_dir}/changelog.Debian.gz)

file(WRITE ${pkg_dir}/copyright
"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: deliverd
Upstream-Contact: ${DELIVERD_MAINTAINER}

Files: *
Copyright: 2026 the deliverd authors
License: other
 All rights reserved by the deliverd authors. No license has been chosen yet;
 this notice is to be replaced by the project's license text.
")

# Maintainer scripts. dpkg runs them as root; each step is skipped where the tool is missing
# (a container or chroot without systemd), so installation itself never fails because of them.
file(WRITE ${pkg_dir}/debian/postinst
"#!/bin/sh
set -e
if [ \"$1\" = configure ]; then
  if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers deliverd.conf
  fi
  if command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles --create deliverd.conf || true
  fi
  if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
  fi
fi
exit 0
")
file(WRITE ${pkg_dir}/debian/prerm
"#!/bin/sh
set -e
# Stopping drains: in-flight deliveries finish, unread entries stay in Redis for the next start.
if [ \"$1\" = remove ] && [ -d /run/systemd/system ] && command -v deb-systemd-invoke >/dev/null 2>&1; then
  deb-systemd-invoke stop deliverd.service >/dev/null || true
fi
exit 0
")
file(WRITE ${pkg_dir}/debian/postrm
"#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl --system daemon-reload >/dev/null || true
fi
exit 0
")
file(WRITE ${pkg_dir}/debian/conffiles "/etc/deliverd/deliverd.toml\n")
file(CHMOD ${pkg_dir}/debian/postinst ${pkg_dir}/debian/prerm ${pkg_dir}/debian/postrm
  PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
file(CHMOD ${pkg_dir}/debian/conffiles PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)

set(doc_dir share/doc/deliverd)
install(FILES ${CMAKE_SOURCE_DIR}/systemd/deliverd.service DESTINATION /lib/systemd/system)
install(FILES ${CMAKE_SOURCE_DIR}/systemd/deliverd.sysusers DESTINATION lib/sysusers.d RENAME deliverd.conf)
install(FILES ${CMAKE_SOURCE_DIR}/systemd/deliverd.tmpfiles DESTINATION lib/tmpfiles.d RENAME deliverd.conf)
install(FILES ${CMAKE_SOURCE_DIR}/conf/deliverd.toml DESTINATION /etc/deliverd)
install(FILES ${pkg_dir}/man/deliverd.8.gz DESTINATION share/man/man8)
install(FILES ${pkg_dir}/man/deliverd.toml.5.gz DESTINATION share/man/man5)
install(FILES ${pkg_dir}/copyright ${pkg_dir}/changelog.Debian.gz DESTINATION ${doc_dir})
install(FILES ${CMAKE_SOURCE_DIR}/docs/operations.md ${CMAKE_SOURCE_DIR}/docs/metrics.md
  ${CMAKE_SOURCE_DIR}/docs/monitoring/alerts.yml ${CMAKE_SOURCE_DIR}/docs/monitoring/grafana-dashboard.json
  DESTINATION ${doc_dir})

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME deliverd)
set(CPACK_PACKAGE_VENDOR "deliverd")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${DELIVERD_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "outbound mail delivery daemon")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# A RelWithDebInfo binary carries its debug info; the package ships it stripped.
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_RELEASE ${DELIVERD_DEB_RELEASE})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${DELIVERD_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION mail)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "redis-server, postgresql")
# The summary above is the synopsis line; this is the extended description under it.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "deliverd takes delivery jobs from a Redis stream and sends each message over
SMTP, through the sender's own submission server or straight to the
recipient's MX, with DKIM signing, per-mailbox rate limits and suppression
lists kept in PostgreSQL. It runs as a hardened systemd service and exports
Prometheus metrics on a small admin HTTP API.")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${pkg_dir}/debian/postinst ${pkg_dir}/debian/prerm ${pkg_dir}/debian/postrm ${pkg_dir}/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
