// The parent end of the actor that hands the page a folder (see PcirFolderChild.sys.mjs).
export class PcirFolderParent extends JSWindowActorParent {}
