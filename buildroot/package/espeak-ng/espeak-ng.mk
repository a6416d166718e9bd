################################################################################
#
# espeak-ng
#
################################################################################

ESPEAK_NG_VERSION = 1.51.1
ESPEAK_NG_SITE = $(call github,espeak-ng,espeak-ng,$(ESPEAK_NG_VERSION))
ESPEAK_NG_LICENSE = GPL-3.0+
ESPEAK_NG_LICENSE_FILES = COPYING
# The GitHub archive has no configure script.
ESPEAK_NG_AUTORECONF = YES
HOST_ESPEAK_NG_AUTORECONF = YES

# storybot plays the samples itself (PortAudio), so no audio backend here; the
# optional engines and the big extended dictionaries stay out of a 64 MB board.
ESPEAK_NG_COMMON_OPTS = --with-pcaudiolib=no --with-sonic=no --with-mbrola=no \
	--with-speechplayer=no --with-extdict-ru=no --with-extdict-cmn=no --with-extdict-yue=no
ESPEAK_NG_CONF_OPTS = $(ESPEAK_NG_COMMON_OPTS)
HOST_ESPEAK_NG_CONF_OPTS = $(ESPEAK_NG_COMMON_OPTS)

# Compiling the voice data runs espeak-ng itself, which a cross build cannot do: the
# host build compiles it (the files are the same on both little-endian machines) and
# the target build makes only the library and the program. Nothing links against the
# library (storybot dlopen()s it), so there is no staging install.
ESPEAK_NG_DEPENDENCIES = host-espeak-ng
ESPEAK_NG_DATA = $(HOST_DIR)/share/espeak-ng-data
ESPEAK_NG_LANGUAGES = $(call qstrip,$(BR2_PACKAGE_ESPEAK_NG_LANGUAGES))

define ESPEAK_NG_BUILD_CMDS
	$(TARGET_MAKE_ENV) $(MAKE) -C $(@D) src/libespeak-ng.la src/espeak-ng
endef

define ESPEAK_NG_INSTALL_TARGET_CMDS
	$(TARGET_MAKE_ENV) $(MAKE) -C $(@D) DESTDIR=$(TARGET_DIR) install-exec
	rm -rf $(TARGET_DIR)/usr/share/espeak-ng-data
	mkdir -p $(TARGET_DIR)/usr/share/espeak-ng-data
	cp -a $(ESPEAK_NG_DATA)/phondata $(ESPEAK_NG_DATA)/phonindex $(ESPEAK_NG_DATA)/phontab \
		$(ESPEAK_NG_DATA)/intonations $(ESPEAK_NG_DATA)/lang $(ESPEAK_NG_DATA)/voices \
		$(TARGET_DIR)/usr/share/espeak-ng-data/
	for l in $(ESPEAK_NG_LANGUAGES); do \
		cp -a $(ESPEAK_NG_DATA)/$${l}_dict $(TARGET_DIR)/usr/share/espeak-ng-data/ || exit 1; \
	done
endef

$(eval $(autotools-package))
$(eval $(host-autotools-package))
